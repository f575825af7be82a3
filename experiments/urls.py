from django.urls import path

from . import views

urlpatterns = [
    path("", views.search_list, name="search-list"),
    path("searches/new/", views.search_new, name="search-new"),
    path("searches/new/budget/", views.budget_preview, name="budget-preview"),
    path("searches/new/plan/", views.search_plan_preview, name="search-plan-preview"),
    path("workers/", views.worker_list, name="worker-list"),
    path("tasks/preview/", views.task_preview, name="task-preview"),
    path("tasks/upload/", views.task_upload, name="task-upload"),
    path("searches/<int:search_id>/", views.search_detail, name="search-detail"),
    path("searches/<int:search_id>/status/", views.search_timeline, name="search-status"),
    path("searches/<int:search_id>/trials/", views.search_trials, name="search-trials"),
    path("searches/<int:search_id>/charts.json", views.search_charts, name="search-charts"),
    path("searches/<int:search_id>/cancel/", views.search_cancel, name="search-cancel"),
    path("searches/<int:search_id>/report/", views.search_report, name="search-report"),
    path("searches/<int:search_id>/stages/<int:stage_id>/", views.stage_detail, name="stage-detail"),
    path("searches/<int:search_id>/trials/<int:trial_id>/", views.trial_detail, name="trial-detail"),
    path("searches/<int:search_id>/trials/<int:trial_id>/<str:action>/", views.trial_action, name="trial-action"),
]
